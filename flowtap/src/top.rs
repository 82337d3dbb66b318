//! `flowtap top`: the heaviest flows of a running flowtap (or hub), as the
//! table `flowtap -r` prints, redrawn every `--interval` until `q`. The
//! terminal is driven through crossterm (raw mode for single keys, the
//! alternate screen so the shell's screen comes back on exit), and restored
//! however the loop ends. Without a terminal on stdout it prints one table
//! and exits, so it can be piped or watched by a script.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};

use crate::cli::TopArgs;
use crate::table::{self, FlowsAnswer, SummaryAnswer};

/// An answer must come within this time, and be at most this large.
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = 64 << 20;

pub(crate) fn run(args: &TopArgs) -> anyhow::Result<i32> {
    let agent = hub::client::AgentUrl::parse(&args.url).map_err(anyhow::Error::msg)?;
    let token = args
        .auth_token_file
        .as_deref()
        .map(crate::cli::read_token)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let get = |path: &str| {
        runtime
            .block_on(hub::client::get(
                &agent,
                path,
                token.as_deref(),
                TIMEOUT,
                MAX_BYTES,
            ))
            .map_err(|e| anyhow::anyhow!("{}{path}: {e}", agent.name()))
    };
    let flows_path = format!(
        "{}?{}",
        api::rest::FLOWS_PATH,
        table::query(args.limit.max(1))
    );
    let screen = || -> anyhow::Result<String> {
        let flows: FlowsAnswer =
            serde_json::from_slice(&get(&flows_path)?).context("reading the flows answer")?;
        let summary: SummaryAnswer = serde_json::from_slice(&get(api::rest::SUMMARY_PATH)?)
            .context("reading the summary")?;
        Ok(table::top_flows(&flows, &summary))
    };

    let mut stdout = std::io::stdout();
    if args.json {
        stdout.write_all(&get(&flows_path)?)?;
        stdout.write_all(b"\n")?;
        return Ok(0);
    }
    if !stdout.is_terminal() {
        write!(stdout, "{}", screen()?)?;
        return Ok(0);
    }

    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let _screen = FullScreen::enter()?;
    loop {
        // A flowtap that is away is said on the screen, and asked again.
        let text = screen().unwrap_or_else(|e| format!("{e:#}\n"));
        queue!(
            stdout,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        let header = format!(
            "flowtap top · {} · every {:.1} s · q to quit\n\n{text}",
            agent.name(),
            interval.as_secs_f64()
        );
        // Raw mode: a new line does not return the cursor by itself.
        stdout.write_all(header.replace('\n', "\r\n").as_bytes())?;
        stdout.flush()?;
        let next = Instant::now() + interval;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(key) if quits(key) => return Ok(0),
                Event::Resize(..) => break,
                _ => {}
            }
        }
    }
}

fn quits(key: KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Raw mode, the alternate screen and a hidden cursor, undone on drop.
struct FullScreen;

impl FullScreen {
    fn enter() -> anyhow::Result<FullScreen> {
        terminal::enable_raw_mode().context("putting the terminal in raw mode")?;
        let screen = FullScreen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )?;
        Ok(screen)
    }
}

impl Drop for FullScreen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}
