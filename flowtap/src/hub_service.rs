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

/// Room for agents' feeds held at once when `--max-feed-bytes-held` is not
/// given (and `--max-feed-bytes` is no larger): at 140 bytes a flow, the
/// feeds of about 1.9M flows, what a hub at its default `--max-flows`
/// merges.
const DEFAULT_FEED_BYTES_HELD: u64 = 256 << 20;

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
    // Room for one feed at its bound at least (a hub whose --max-feed-bytes
    // was raised before this option existed still starts).
    let max_feed_bytes_held = args
        .max_feed_bytes_held
        .unwrap_or(DEFAULT_FEED_BYTES_HELD.max(args.max_feed_bytes));
    anyhow::ensure!(
        max_feed_bytes_held >= args.max_feed_bytes,
        "--max-feed-bytes-held {max_feed_bytes_held} is below --max-feed-bytes {}: a feed the hub takes must fit in the room for feeds held at once",
        args.max_feed_bytes
    );
    anyhow::ensure!(
        !sources.is_empty(),
        "no agents: give --agent URL, --agents-dns NAME:PORT or --agents-service NAMESPACE/NAME"
    );
    let token = match &args.agent_token_file {
        Some(path) => Some(read_token("--agent-token-file", path)?),
        None => None,
    };
    // Gone pods kept as long as an agent's flows with the default timeouts
    // stay (the hub does not know its agents' timeouts).
    let publisher = Arc::new(std::sync::Mutex::new(setup::named_publisher(
        &args.names,
        &args.serve,
        k8s::GONE_PODS_KEPT,
    )?));
    let interval = Duration::from_secs_f64(args.snapshot_interval);
    publisher
        .lock()
        .expect("publisher lock")
        .set_interval(interval);
    let agent_timeout = Duration::from_secs_f64(args.agent_timeout);
    // Pausing sooner than one interval would pause between every two
    // rounds; sooner than a round can take (its pulls wait up to the agent
    // timeout), right after the round a request woke the hub for, so the
    // next request would wake it again.
    let idle_after = (args.idle_after > 0.0)
        .then(|| Duration::from_secs_f64(args.idle_after).max(interval + agent_timeout));
    let server_config = args.serve.server_config(args.snapshot_interval)?;
    // A request woken hub's answer must still be written within the
    // server's response deadline, or its connection is closed unanswered.
    let wake_wait = (agent_timeout + hub::WAKE_WAIT_BEYOND_TIMEOUT)
        .min(server_config.response_timeout.mul_f64(0.8));
    let demand = Arc::new(Demand::new(wake_wait));
    // Set before serving: a scrape at start reads the bound, not 0.
    publisher
        .lock()
        .expect("publisher lock")
        .stats()
        .hub_feed_room_bytes
        .store(max_feed_bytes_held, std::sync::atomic::Ordering::Relaxed);
    // A one-shot --dump serves nothing unless --listen says so.
    let one_shot = !args.serve.dump.is_empty();
    let service = if one_shot && args.serve.listen.is_none() {
        None
    } else {
        Some(Service::start(
            args.serve.listen(),
            publisher.clone(),
            server_config,
            &[],
            None,
            Some(demand.clone()),
        )?)
    };
    let config = HubConfig {
        discovery: Discovery::new(sources),
        token,
        interval,
        agent_timeout,
        max_agents: args.max_agents.max(1),
        max_feed_bytes: usize::try_from(args.max_feed_bytes).unwrap_or(usize::MAX),
        max_feed_bytes_held: usize::try_from(max_feed_bytes_held).unwrap_or(usize::MAX),
        max_flows: args.max_flows,
        idle_after,
    };
    let hub = Hub::start(config, publisher.clone(), demand).context("starting the hub")?;
    if let Some(service) = &service
        && !one_shot
    {
        service.catch_stop_signals()?;
    }
    // Ready once its first round is published: before it, an answer named
    // no agent, missing or not, and read as a cluster without traffic
    // (requests for data wait for that round: `api::demand`).
    let published = publisher.lock().expect("publisher lock").stats();
    let outcome = match &service {
        Some(service) if !one_shot => service.run_until_signal(|| {
            if published
                .snapshots
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
            {
                service.set_ready();
            }
            None
        }),
        _ => {
            let known = first_known_round(&publisher, agent_timeout + Duration::from_secs(30));
            if let Some(service) = &service {
                service.set_ready();
            }
            known
        }
    };
    drop(hub);
    let failed = setup::dump(&publisher, &args.serve.dump)?;
    if let Some(service) = service {
        service.stop();
    }
    outcome?;
    Ok(if failed { 2 } else { 0 })
}

/// Waits for the first round that knows its agents, for a one-shot
/// `--dump`: a round before the Kubernetes watch has listed the agents'
/// Service answers for none of them. Past `within`, the last round is
/// taken as it is (its coverage says what is missing); without any, an
/// error.
fn first_known_round(
    publisher: &std::sync::Mutex<api::Publisher>,
    within: Duration,
) -> anyhow::Result<()> {
    let (stats, views) = {
        let publisher = publisher.lock().expect("publisher lock");
        (publisher.stats(), publisher.views())
    };
    let deadline = std::time::Instant::now() + within;
    let mut seen = 0;
    while std::time::Instant::now() < deadline {
        let published = stats.snapshots.load(std::sync::atomic::Ordering::Acquire);
        if published > seen {
            seen = published;
            let view = views.load();
            let unknown = view.snapshot.coverage.agents.iter().any(|a| {
                a.error
                    .as_deref()
                    .is_some_and(|e| e == hub::agents::NOT_LISTED || e == hub::agents::NOT_LOADED)
            });
            if !unknown {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::ensure!(
        seen > 0,
        "--dump: the hub's first round did not end within {within:?}"
    );
    tracing::warn!("--dump: no round knew every agent within {within:?}; printing the last one");
    Ok(())
}
