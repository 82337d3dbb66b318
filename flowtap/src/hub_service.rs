//! `flowtap hub`: the hub (the `hub` crate) pulling every agent, and the
//! same service an agent runs answering from the merged snapshots.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use api::demand::Demand;
use hub::{AgentSource, AgentUrl, Discovery, Hub, HubConfig};

use crate::cli::{HubArgs, read_token};
use crate::serve::Service;
use crate::setup;

pub(crate) fn run(args: &HubArgs) -> anyhow::Result<i32> {
    let mut sources = Vec::new();
    for url in &args.agents {
        sources.push(AgentSource::Url(
            AgentUrl::parse(url).map_err(|e| anyhow::anyhow!("--agent: {e}"))?,
        ));
    }
    for name in &args.agents_dns {
        sources.push(AgentSource::dns(name).map_err(|e| anyhow::anyhow!("--agents-dns: {e}"))?);
    }
    if let Some(service) = &args.agents_service {
        anyhow::ensure!(
            args.names.k8s_watch || args.names.k8s_inventory.is_some(),
            "--agents-service needs the Kubernetes names: give --k8s-watch (or --k8s-inventory)"
        );
        sources.push(
            AgentSource::service(service).map_err(|e| anyhow::anyhow!("--agents-service: {e}"))?,
        );
    }
    anyhow::ensure!(
        !args.serve.json,
        "--json: a hub's answers are JSON already; print one with --dump PATH"
    );
    anyhow::ensure!(
        !sources.is_empty(),
        "no agents: give --agent URL, --agents-dns NAME:PORT or --agents-service NAMESPACE/NAME"
    );
    let token = match &args.agent_token_file {
        Some(path) => Some(read_token(path).context("--agent-token-file")?),
        None => None,
    };
    let publisher = Arc::new(std::sync::Mutex::new(setup::named_publisher(
        &args.names,
        &args.serve,
    )?));
    let interval = Duration::from_secs_f64(args.snapshot_interval.max(0.05));
    publisher
        .lock()
        .expect("publisher lock")
        .set_interval(interval);
    let agent_timeout = Duration::from_secs_f64(args.agent_timeout.max(0.01));
    // Pausing sooner than one interval would pause between every two rounds.
    let idle_after =
        (args.idle_after > 0.0).then(|| Duration::from_secs_f64(args.idle_after).max(interval));
    let server_config = args.serve.server_config(args.snapshot_interval)?;
    // A request woken hub's answer must still be written within the
    // server's response deadline, or its connection is closed unanswered.
    let wake_wait = (agent_timeout + hub::WAKE_WAIT_BEYOND_TIMEOUT)
        .min(server_config.response_timeout.mul_f64(0.8));
    let demand = Arc::new(Demand::new(wake_wait));
    let service = Service::start(
        args.serve.listen(),
        publisher.clone(),
        server_config,
        &[],
        None,
        Some(demand.clone()),
    )?;
    let config = HubConfig {
        discovery: Discovery::new(sources),
        token,
        interval,
        agent_timeout,
        max_agents: args.max_agents.max(1),
        max_feed_bytes: usize::try_from(args.max_feed_bytes).unwrap_or(usize::MAX),
        max_flows: args.max_flows,
        idle_after,
    };
    let hub = Hub::start(config, publisher.clone(), demand).context("starting the hub")?;
    // The hub answers from the start; the coverage says what is missing.
    service.set_ready();
    let outcome = if args.serve.dump.is_empty() {
        service.run_until_signal(|| None)
    } else {
        // One answer for a script: the first round's, then exit.
        let stats = publisher.lock().expect("publisher lock").stats();
        let deadline = std::time::Instant::now() + agent_timeout + Duration::from_secs(30);
        while stats.snapshots.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "--dump: the hub's first round did not end within --agent-timeout and 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    drop(hub);
    let failed = setup::dump(&publisher, &args.serve.dump)?;
    service.stop();
    outcome?;
    Ok(if failed { 2 } else { 0 })
}
