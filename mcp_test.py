import asyncio, json, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
async def run(url, headers=None):
    out={}
    async with streamablehttp_client(url, headers=headers) as (r,w,_):
        async with ClientSession(r,w) as s:
            init=await s.initialize()
            out['server']=init.serverInfo.name
            tools=await s.list_tools()
            out['tools']={t.name: list((t.inputSchema or {}).get('properties',{}).keys()) for t in tools.tools}
            calls=json.loads(sys.argv[2]) if len(sys.argv)>2 else {}
            for name,args in calls:
                res=await s.call_tool(name,args)
                txt=''.join(c.text for c in res.content if hasattr(c,'text'))
                out.setdefault('calls',[]).append([name,args,res.isError,txt, res.structuredContent])
            try:
                p=await s.list_prompts(); out['prompts']=[x.name for x in p.prompts]
            except Exception as e: out['prompts']=str(e)
    return out
print(json.dumps(asyncio.run(run(sys.argv[1]))))
