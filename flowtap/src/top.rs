//! `flowtap top`: the heaviest flows of a running flowtap (or hub), as the
//! table `flowtap -r` prints, redrawn every `--interval` until `q`. The
//! terminal is driven through crossterm (raw mode for single keys, the
//! alternate screen so the shell's screen comes back on exit), and restored
//! however the loop ends. Without a terminal on stdout it prints one table
//! and exits, so it can be piped or watched by a script.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, terminal};

use crate::cli::TopArgs;
use crate::table::{self, FlowsAnswer, SummaryAnswer};

/// An answer must come within this time.
const TIMEOUT: Duration = Duration::from_secs(5);
/// An answer may be this large, and this much more for each flow asked
/// for (`--limit`): a full-format flow is under 1 KiB, a hub's with the
/// agents that saw it a few.
const MAX_BYTES: usize = 1 << 20;
const MAX_BYTES_PER_FLOW: usize = 4 << 10;

pub(crate) fn run(args: &TopArgs) -> anyhow::Result<i32> {
    // Its paths under the URL's own (a proxy's prefix; `/mcp` left out, as
    // FLOWTAP_URL is mcp-stdio's too): the prefix was dropped.
    let (agent, base) = crate::cli::flowtap_url(&args.url).map_err(anyhow::Error::msg)?;
    let max_bytes = MAX_BYTES + MAX_BYTES_PER_FLOW * args.limit as usize;
    let token = args
        .auth_token_file
        .as_deref()
        .map(|path| crate::cli::read_token("--auth-token-file", path))
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let get = |path: String| {
        let (agent, token) = (&agent, token.as_deref());
        let path = format!("{base}{path}");
        async move {
            hub::client::get(agent, &path, token, TIMEOUT, max_bytes)
                .await
                .map_err(|e| {
                    // An error answer's body is the server's text: said on
                    // stderr (a terminal) with its escapes shown.
                    let said = table::for_terminal(&format!("{}{path}: {e}", agent.name()));
                    anyhow::Error::msg(said)
                })
        }
    };
    let flows_path = format!(
        "{}?{}",
        api::rest::FLOWS_PATH,
        table::query(args.limit as usize)
    );
    let screen = || async {
        let flows: FlowsAnswer = serde_json::from_slice(&get(flows_path.clone()).await?)
            .context("reading the flows answer")?;
        let summary: SummaryAnswer =
            serde_json::from_slice(&get(api::rest::SUMMARY_PATH.to_owned()).await?)
                .context("reading the summary")?;
        anyhow::Ok(table::top_flows(
            &flows,
            &summary,
            "--json for the flows answer",
            // A pipe's table is whole (crossterm would guess 80 columns).
            std::io::stdout()
                .is_terminal()
                .then(terminal::size)
                .and_then(Result::ok)
                .map(|(columns, _)| columns),
        ))
    };

    let mut stdout = std::io::stdout();
    if args.json {
        let answer = runtime.block_on(get(flows_path.clone()))?;
        if stdout.is_terminal() {
            stdout
                .write_all(table::json_for_terminal(&answer).as_bytes())
                .context("writing to stdout")?;
        } else {
            stdout.write_all(&answer).context("writing to stdout")?;
        }
        stdout.write_all(b"\n").context("writing to stdout")?;
        return Ok(0);
    }
    if !stdout.is_terminal() {
        let flows = runtime.block_on(screen())?;
        write!(stdout, "{}", table::for_terminal(&flows.to_string()))
            .context("writing to stdout")?;
        return Ok(0);
    }

    let interval = Duration::from_secs_f64(args.interval);
    let _screen = FullScreen::enter()?;
    // q, Esc, Ctrl-C, SIGTERM, SIGINT (Ctrl-C is a key in raw mode; a
    // `kill -INT` is not) and SIGHUP (a closed terminal window) end the
    // loop, so the terminal is given back as it was, even while an answer
    // is awaited (the keys are read on a thread of their own).
    let ended = Arc::new(AtomicBool::new(false));
    let resized = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, ended.clone()).context("handling signals")?;
    }
    let keys = read_keys(ended.clone(), resized.clone());
    let until_ended = || async {
        while !ended.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let code = loop {
        let title = format!(
            "flowtap top · {} · every {:.1} s · q to quit",
            agent.name(),
            interval.as_secs_f64()
        );
        // A flowtap that is away is said on the screen, and asked again.
        let answer = runtime.block_on(async {
            tokio::select! {
                answer = screen() => Some(answer),
                () = until_ended() => None,
            }
        });
        let Some(answer) = answer else { break 0 };
        let text = match answer {
            Ok(flows) => fit(&title, &flows, terminal::size()?),
            Err(e) => format!("{title}\n\n{}\n", crate::error_text(&e)),
        };
        queue!(
            stdout,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        // Raw mode: a new line does not return the cursor by itself. No new
        // line after the last: on the screen's last row it would scroll
        // the title away.
        // What the server sent is shown, never obeyed as escape sequences.
        let text = table::for_terminal(&text);
        let text = text.trim_end_matches('\n');
        stdout.write_all(text.replace('\n', "\r\n").as_bytes())?;
        stdout.flush()?;
        let next = Instant::now() + interval;
        while Instant::now() < next
            && !ended.load(Ordering::Relaxed)
            && !resized.swap(false, Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if ended.load(Ordering::Relaxed) {
            break 0;
        }
    };
    // The key thread is not waited for: on a terminal that hung up, the
    // reading it is in never returns (it would hold the process, spinning,
    // after its window closed); it ends with the process.
    ended.store(true, Ordering::Relaxed);
    drop(keys);
    Ok(code)
}

/// Reads the terminal's keys until `ended`: a quitting key ends it, a
/// resize asks for a redraw.
fn read_keys(ended: Arc<AtomicBool>, resized: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !ended.load(Ordering::Relaxed) {
            // Short polls, so that an end from elsewhere is seen.
            match event::poll(Duration::from_millis(50)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => break,
            }
            match event::read() {
                Ok(Event::Key(key)) if quits(key) => ended.store(true, Ordering::Relaxed),
                Ok(Event::Resize(..)) => resized.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
}

/// The title, the table and its footer in a terminal of `(columns, rows)`:
/// the table's lines past what fits are left out (the heaviest flows are
/// its first), so the title, the column names and the footer always show.
fn fit(title: &str, flows: &table::FlowsTable, (columns, rows): (u16, u16)) -> String {
    // Lines longer than the terminal is wide take several (the table is
    // made to fit; the title and the footer's sentences are not).
    // The table is made to fit but may not (a terminal narrower than
    // its narrowest layout): its lines are counted the same way.
    let line_rows = |line: &str| {
        table::columns(line)
            .div_ceil(usize::from(columns.max(1)))
            .max(1)
    };
    let screen_lines = |text: &str| -> usize { text.lines().map(line_rows).sum() };
    let lines: Vec<&str> = flows.table.lines().collect();
    let cut = |left_out: usize| {
        format!("… {left_out} more lines: a taller terminal, or --limit, shows them")
    };
    // The title, a blank line, the footer, and the cut's note, which a
    // narrow terminal wraps too (at its longest: no more digits than
    // every line's count).
    let fixed =
        screen_lines(title) + 1 + screen_lines(&flows.footer) + screen_lines(&cut(lines.len()));
    let room = usize::from(rows).saturating_sub(fixed).max(3);
    let table = if screen_lines(&flows.table) <= room + screen_lines(&cut(lines.len())) {
        flows.table.clone()
    } else {
        // As many of the table's lines as take `room` rows, at least 3.
        let mut taken = 0;
        let shown = lines
            .iter()
            .take_while(|l| {
                taken += line_rows(l);
                taken <= room
            })
            .count()
            .max(3.min(lines.len()));
        format!(
            "{}\n{}",
            lines[..shown].join("\n"),
            cut(lines.len() - shown)
        )
    };
    format!("{title}\n\n{table}\n{}", flows.footer)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_keeps_its_title_columns_and_footer() {
        let flows = table::FlowsTable {
            table: (0..40)
                .map(|i| format!("row {i}"))
                .collect::<Vec<_>>()
                .join("\n"),
            footer: "totals\nNOT SEEN: 1 of 2 agents answered\n".to_owned(),
        };
        let screen = fit("title", &flows, (80, 24));
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(lines.len(), 24, "{screen}");
        assert_eq!(lines[0], "title");
        assert_eq!(lines[2], "row 0");
        assert_eq!(lines[20], "row 18");
        assert!(lines[21].starts_with("… 21 more lines"), "{screen}");
        assert_eq!(&lines[22..], ["totals", "NOT SEEN: 1 of 2 agents answered"]);
        // What fits is shown whole.
        let small = table::FlowsTable {
            table: "a\nb".to_owned(),
            footer: "totals\n".to_owned(),
        };
        assert_eq!(fit("title", &small, (80, 24)), "title\n\na\nb\ntotals\n");
        // A footer line wider than the terminal takes two of its lines.
        let wide = table::FlowsTable {
            footer: format!("{}\n", "x".repeat(100)),
            ..flows
        };
        let screen = fit("title", &wide, (80, 24));
        assert_eq!(screen.lines().count(), 23, "{screen}");
        // In a narrow terminal the cut's note wraps too: everything still
        // fits its rows, the title first (it scrolled away).
        let narrow = fit("title", &wide, (40, 20));
        let taken: usize = narrow
            .lines()
            .map(|l| l.chars().count().div_ceil(40).max(1))
            .sum();
        assert!(taken <= 20, "{taken} rows: {narrow}");
        assert!(narrow.starts_with("title\n"), "{narrow}");
        // A table wider than the terminal (narrower than any layout): its
        // lines are counted by the rows they take too.
        let wider = table::FlowsTable {
            table: (0..40)
                .map(|i| format!("{i:<70}|"))
                .collect::<Vec<_>>()
                .join("\n"),
            footer: "totals\n".to_owned(),
        };
        let screen = fit("title", &wider, (40, 24));
        let taken: usize = screen
            .lines()
            .map(|l| table::columns(l).div_ceil(40).max(1))
            .sum();
        assert!(taken <= 24, "{taken} rows: {screen}");
        assert!(screen.starts_with("title\n\n0 "), "{screen}");
    }
}
