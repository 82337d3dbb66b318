// Drives flowtap's MCP server with the official TypeScript SDK and prints
// what it saw as one JSON document on stdout, in the shape
// mcp_client.py prints, for tests/mcp.rs to check the same way.
//
//   node mcp_client.mjs --http URL [--token T] --calls JSON
//   node mcp_client.mjs --stdio --calls JSON -- COMMAND ARGS...
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const { values: args, positionals: command } = parseArgs({
  options: {
    http: { type: 'string' },
    stdio: { type: 'boolean' },
    token: { type: 'string' },
    calls: { type: 'string' },
  },
  allowPositionals: true,
});
const sdk = JSON.parse(
  readFileSync(new URL('node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url)),
).version;

const transport = args.stdio
  ? new StdioClientTransport({ command: command[0], args: command.slice(1), stderr: 'inherit' })
  : new StreamableHTTPClientTransport(new URL(args.http), {
      requestInit: { headers: args.token ? { Authorization: `Bearer ${args.token}` } : {} },
    });
// The revision the handshake settled on, as the client hands it to the
// transport (stdio's has no setter of its own).
let protocol = null;
const set = transport.setProtocolVersion?.bind(transport);
transport.setProtocolVersion = (version) => {
  protocol = version;
  set?.(version);
};
// Anything the SDK reports beside a call's result (an answer it could not
// match, a stream that broke) fails the run.
const errors = [];
const client = new Client({ name: 'flowtap-test', version: '0' });
client.onerror = (e) => errors.push(String(e));

await client.connect(transport);
const report = { sdk: `ts ${sdk}`, protocol, era: 'handshake', calls: [] };
// listTools checks nothing; callTool checks each structured result against
// the tool's outputSchema (ajv) and throws where it does not match.
report.tools = (await client.listTools()).tools.map((t) => ({
  name: t.name,
  has_output_schema: t.outputSchema !== undefined,
}));
for (const [tool, argumentsOf] of JSON.parse(args.calls)) {
  const r = await client.callTool({ name: tool, arguments: argumentsOf });
  report.calls.push({
    tool,
    arguments: argumentsOf,
    is_error: Boolean(r.isError),
    structured: r.structuredContent ?? null,
    text: r.content?.[0]?.text ?? null,
  });
}
report.prompts = (await client.listPrompts()).prompts.map((p) => ({
  name: p.name,
  required: (p.arguments ?? []).filter((a) => a.required).map((a) => a.name),
}));
const got = await client.getPrompt({ name: 'diagnose_slow_service', arguments: { service: 'payments' } });
report.prompt = { role: got.messages[0].role, text: got.messages[0].content.text };
await client.ping();
if (transport.terminateSession) await transport.terminateSession();
await client.close();
if (errors.length) {
  console.error(errors.join('\n'));
  process.exit(1);
}
process.stdout.write(JSON.stringify(report));
