//! `--wait`: polls an operation until it is terminal while showing its steps on stderr, then a
//! summary on stdout.
//!
//! At a terminal, the step list is live (indicatif): a spinner on the running step, ✓/✗/↶ on the
//! finished ones. Without a terminal (CI logs), one plain line per step change. With `--json`,
//! nothing but the finished operation's JSON on stdout.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use api_types::{Operation, OperationState, StepState};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::client::Client;
use crate::error::{one_line, Failure};
use crate::render;

/// How often `--wait` polls the operation.
const POLL_INTERVAL: Duration = Duration::from_millis(300);
/// The longest `Retry-After` pause `--wait` sits through; a longer one ends the wait with a hint.
const MAX_RETRY_AFTER_SECS: u64 = 60;
/// Spinner frame interval.
const TICK: Duration = Duration::from_millis(100);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `--json`: no progress at all.
    Quiet,
    /// stderr is not a terminal: one line per step change.
    Plain,
    /// stderr is a terminal: live step list with a spinner.
    Live,
}

impl Style {
    /// The style for these output settings.
    pub fn pick(json: bool, stderr_is_terminal: bool) -> Style {
        match (json, stderr_is_terminal) {
            (true, _) => Style::Quiet,
            (false, true) => Style::Live,
            (false, false) => Style::Plain,
        }
    }
}

/// Something that shows an operation's progress.
trait Reporter {
    /// Called after every poll.
    fn update(&mut self, op: &Operation);
    /// Called once, when the operation is terminal or polling stopped.
    fn finish(&mut self);
}

struct Quiet;

impl Reporter for Quiet {
    fn update(&mut self, _op: &Operation) {}
    fn finish(&mut self) {}
}

/// One line per step change, for logs.
pub struct Plain<W: Write> {
    out: W,
    seen: HashMap<String, StepState>,
}

impl<W: Write> Plain<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> Self {
        Plain {
            out,
            seen: HashMap::new(),
        }
    }

    /// Writes a line for every step that started or changed state since the last call.
    pub fn report(&mut self, op: &Operation) {
        for step in &op.steps {
            if step_changed(&mut self.seen, &step.name, step.state) {
                let _ = writeln!(self.out, "{}", render::step_line(step));
            }
        }
        let _ = self.out.flush();
    }
}

impl<W: Write> Reporter for Plain<W> {
    fn update(&mut self, op: &Operation) {
        self.report(op);
    }
    fn finish(&mut self) {}
}

/// Records a step's state; true if it is worth a progress line (new and started, or changed).
fn step_changed(seen: &mut HashMap<String, StepState>, name: &str, state: StepState) -> bool {
    match seen.insert(name.to_owned(), state) {
        None => state != StepState::Pending,
        Some(previous) => previous != state,
    }
}

/// The live step list.
struct Live {
    multi: MultiProgress,
    bars: Vec<(String, ProgressBar, Option<StepState>)>,
}

fn template(t: &str) -> ProgressStyle {
    ProgressStyle::with_template(t)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

impl Live {
    fn new() -> Self {
        Live {
            multi: MultiProgress::new(),
            bars: Vec::new(),
        }
    }

    fn show(bar: &ProgressBar, name: &str, state: StepState, error: Option<&str>) {
        let (style, message, spinning) = match state {
            StepState::Pending => (template("  {msg:.dim}"), format!("· {name}"), false),
            StepState::Running => (
                template("  {spinner:.cyan} {msg} {elapsed:.dim}"),
                name.to_owned(),
                true,
            ),
            StepState::Succeeded => (template("  {msg:.green}"), format!("✓ {name}"), false),
            StepState::Failed => (
                template("  {msg:.red}"),
                match error {
                    Some(e) => format!("✗ {name}: {}", one_line(e)),
                    None => format!("✗ {name}"),
                },
                false,
            ),
            StepState::RollingBack => (
                template("  {spinner:.yellow} {msg} {elapsed:.dim}"),
                format!("{name} (rolling back)"),
                true,
            ),
            StepState::RolledBack => match error {
                Some(e) => (
                    template("  {msg:.red}"),
                    format!("✗ {name}: {} (rolled back)", one_line(e)),
                    false,
                ),
                None => (
                    template("  {msg:.yellow}"),
                    format!("↶ {name} (rolled back)"),
                    false,
                ),
            },
        };
        bar.set_style(style);
        bar.set_message(message);
        if spinning {
            bar.reset_elapsed();
            bar.enable_steady_tick(TICK);
        } else {
            bar.disable_steady_tick();
            bar.tick();
        }
    }
}

impl Reporter for Live {
    fn update(&mut self, op: &Operation) {
        for step in &op.steps {
            let index = match self.bars.iter().position(|(n, _, _)| *n == step.name) {
                Some(i) => i,
                None => {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    self.bars.push((step.name.clone(), bar, None));
                    self.bars.len() - 1
                }
            };
            let (name, bar, shown) = &mut self.bars[index];
            if *shown != Some(step.state) {
                Live::show(bar, name, step.state, step.error.as_deref());
                *shown = Some(step.state);
            }
        }
    }

    fn finish(&mut self) {
        for (_, bar, _) in &self.bars {
            bar.disable_steady_tick();
            bar.finish();
        }
    }
}

/// The summary printed on stdout when the operation is terminal.
pub fn summary(op: &Operation, elapsed_secs: f64) -> String {
    render::summary_line(op, elapsed_secs)
}

/// The failure reported when a terminal operation did not succeed: the failed step, its error,
/// and what to do about it.
pub fn failure(op: &Operation) -> Failure {
    let step = op
        .steps
        .iter()
        .find(|s| s.state == StepState::Failed)
        .or_else(|| op.steps.iter().find(|s| s.error.is_some()));
    let message = match step {
        Some(s) => format!(
            "{} {} {}: step {} failed: {}",
            op.kind,
            op.tenant,
            op.state,
            s.name,
            s.error.as_deref().map(one_line).unwrap_or_default()
        ),
        None => format!("{} {} {}", op.kind, op.tenant, op.state),
    };
    // The workflow's own advice comes with the operation; the details are always there.
    let details = format!("details: tenantctl operations show {}", op.id);
    let hint = match &op.hint {
        Some(h) => format!("{h} ({details})"),
        None => format!("{details}, and the server log"),
    };
    Failure::new(message).hint(hint)
}

/// Polls operation `id` until it is terminal. Prints the summary (or, with `--json`, the
/// operation's JSON) on stdout; a failed or rolled-back operation is an error (exit 1).
pub async fn follow(client: &Client, id: Uuid, style: Style) -> Result<(), Failure> {
    let mut reporter: Box<dyn Reporter> = match style {
        Style::Quiet => Box::new(Quiet),
        Style::Plain => Box::new(Plain::new(std::io::stderr())),
        Style::Live => Box::new(Live::new()),
    };
    let started = Instant::now();
    // The server answers as soon as the operation ends, else after the interval (progress).
    let path = format!("/v1/operations/{id}?wait_ms={}", POLL_INTERVAL.as_millis());
    loop {
        let asked = Instant::now();
        let polled = client.get::<Operation>(&path).await;
        let (op, raw) = match polled {
            Ok(answer) => answer,
            // The server asked for a pause (429/503 with Retry-After): honour it, keep following.
            Err(Failure {
                retry_after_secs: Some(secs),
                ..
            }) if secs <= MAX_RETRY_AFTER_SECS => {
                tokio::time::sleep(Duration::from_secs(secs.max(1))).await;
                continue;
            }
            Err(f) => {
                reporter.finish();
                return Err(resume_hint(f, id));
            }
        };
        reporter.update(&op);
        if op.state.is_terminal() {
            reporter.finish();
            let elapsed = match op.finished_at {
                Some(end) => (end - op.created_at).num_milliseconds().max(0) as f64 / 1000.0,
                None => started.elapsed().as_secs_f64(),
            };
            if style == Style::Quiet {
                crate::emit_json(&raw)?;
            } else {
                crate::emit(&summary(&op, elapsed));
            }
            return if op.state == OperationState::Succeeded {
                Ok(())
            } else {
                Err(failure(&op))
            };
        }
        // A server that does not wait (one older than `wait_ms`) is not asked in a tight loop.
        tokio::time::sleep(POLL_INTERVAL.saturating_sub(asked.elapsed())).await;
    }
}

/// A failure while polling: the operation itself goes on, so say how to pick it up again.
fn resume_hint(f: Failure, id: Uuid) -> Failure {
    let resume = format!(
        "the operation continues on the server; resume with `tenantctl operations show {id} \
         --wait`"
    );
    match f.hint.clone() {
        Some(h) => f.hint(format!("{h}; {resume}")),
        None => f.hint(resume),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use api_types::{OperationKind, OperationStep, TenantSlug};
    use chrono::Utc;

    fn op(kind: OperationKind, state: OperationState, steps: &[(&str, StepState)]) -> Operation {
        Operation {
            id: Uuid::nil(),
            tenant: TenantSlug::parse("acme").unwrap(),
            kind,
            state,
            steps: steps
                .iter()
                .map(|(n, s)| OperationStep {
                    name: (*n).to_owned(),
                    state: *s,
                    error: (*s == StepState::Failed).then(|| "login failed\nfor x".to_owned()),
                })
                .collect(),
            created_at: Utc::now(),
            finished_at: None,
            parent: None,
            hint: None,
        }
    }

    #[test]
    fn style_follows_json_and_terminal() {
        assert_eq!(Style::pick(true, true), Style::Quiet);
        assert_eq!(Style::pick(true, false), Style::Quiet);
        assert_eq!(Style::pick(false, true), Style::Live);
        assert_eq!(Style::pick(false, false), Style::Plain);
    }

    #[test]
    fn plain_progress_prints_one_line_per_step_change() {
        use OperationState as O;
        use StepState as S;
        let mut out = Vec::new();
        {
            let mut plain = Plain::new(&mut out);
            let polls = [
                op(
                    OperationKind::ONBOARD,
                    O::Running,
                    &[("a", S::Running), ("b", S::Pending)],
                ),
                op(
                    OperationKind::ONBOARD,
                    O::Running,
                    &[("a", S::Running), ("b", S::Pending)],
                ),
                op(
                    OperationKind::ONBOARD,
                    O::Running,
                    &[("a", S::Succeeded), ("b", S::Failed)],
                ),
                op(
                    OperationKind::ONBOARD,
                    O::RolledBack,
                    &[("a", S::RolledBack), ("b", S::Failed)],
                ),
            ];
            for p in &polls {
                plain.report(p);
            }
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  … a\n  ✓ a\n  ✗ b: login failed for x\n  ↶ a (rolled back)\n"
        );
    }

    #[test]
    fn step_changes_are_reported_once() {
        let mut seen = HashMap::new();
        assert!(!step_changed(&mut seen, "a", StepState::Pending));
        assert!(step_changed(&mut seen, "a", StepState::Running));
        assert!(!step_changed(&mut seen, "a", StepState::Running));
        assert!(step_changed(&mut seen, "a", StepState::Succeeded));
        assert!(step_changed(&mut seen, "b", StepState::Failed));
    }

    #[test]
    fn failures_name_the_step_and_say_what_to_do() {
        let mut rolled_back = op(
            OperationKind::ONBOARD,
            OperationState::RolledBack,
            &[
                ("create_database", StepState::RolledBack),
                ("verify_access", StepState::Failed),
            ],
        );
        rolled_back.hint = Some("every step was undone and the slug acme is free again".into());
        let f = failure(&rolled_back);
        assert_eq!(
            f.message,
            "onboard acme rolled_back: step verify_access failed: login failed for x"
        );
        let hint = f.hint.as_deref().unwrap();
        assert!(hint.contains("free again"), "{hint}");
        assert!(hint.contains("tenantctl operations show"), "{hint}");
        // Without a hint from the server: where to look.
        let f = failure(&op(
            OperationKind::OFFBOARD,
            OperationState::Failed,
            &[("drop_database", StepState::Failed)],
        ));
        assert!(f.hint.as_deref().unwrap().contains("the server log"));
        let f = failure(&op(OperationKind::ROTATE, OperationState::Failed, &[]));
        assert_eq!(f.message, "rotate acme failed");
        assert_eq!(f.lines().len(), 2);
    }

    #[test]
    fn polling_errors_say_how_to_resume() {
        let f = resume_hint(Failure::new("x").hint("h"), Uuid::nil());
        assert!(f.hint.as_deref().unwrap().starts_with("h; the operation"));
        let f = resume_hint(Failure::new("x"), Uuid::nil());
        assert!(f
            .hint
            .as_deref()
            .unwrap()
            .contains("operations show 00000000-0000-0000-0000-000000000000 --wait"));
    }

    #[test]
    fn live_progress_draws_without_a_terminal() {
        // Hidden draw target: exercises the state machine (styles, ticks, finish) only.
        let mut live = Live {
            multi: MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()),
            bars: Vec::new(),
        };
        live.update(&op(
            OperationKind::ROTATE,
            OperationState::Running,
            &[
                ("plan", StepState::Succeeded),
                ("rotate_app", StepState::Running),
            ],
        ));
        live.update(&op(
            OperationKind::ROTATE,
            OperationState::Failed,
            &[
                ("plan", StepState::Succeeded),
                ("rotate_app", StepState::Failed),
            ],
        ));
        live.finish();
        assert_eq!(live.bars.len(), 2);
        assert_eq!(live.bars[1].2, Some(StepState::Failed));
        assert!(live.bars[1]
            .1
            .message()
            .starts_with("✗ rotate_app: login failed"));
    }
}
