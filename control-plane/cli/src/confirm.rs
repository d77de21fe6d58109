//! Confirmation of destructive commands: the operator types the tenant's slug, or passes
//! `--confirm SLUG`. A wrong `--confirm`, or no terminal to ask at, is refused before any
//! request (and before a token is fetched).

use api_types::TenantSlug;

use crate::error::Failure;

/// A command that cannot be undone, or that cuts live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destructive {
    /// `tenants offboard`: removes the database, principals and secrets.
    Offboard,
    /// `tenants rotate --mode emergency`: disables the previous app login at once and ends its
    /// sessions, so every application still on the old connection string fails.
    EmergencyRotation,
    /// `tenants restore`: brings a retained tenant back with new passwords.
    Restore,
}

impl Destructive {
    fn doing(self) -> &'static str {
        match self {
            Destructive::Offboard => "offboarding",
            Destructive::EmergencyRotation => "an emergency rotation of",
            Destructive::Restore => "restoring",
        }
    }

    /// The warning printed before the prompt.
    pub fn warning(self, slug: &TenantSlug) -> String {
        match self {
            Destructive::Offboard => format!(
                "Offboarding removes {slug}'s database, principals and secrets; it cannot be undone \
                 unless it has a restore window (--retention)."
            ),
            Destructive::Restore => format!(
                "Restoring makes {slug} active again with new passwords for its logins; the \
                 connection strings of before its offboarding stay invalid."
            ),
            Destructive::EmergencyRotation => format!(
                "An emergency rotation disables {slug}'s previous app login at once and ends its \
                 sessions; applications still using the old connection string will fail."
            ),
        }
    }
}

/// Proof that the operator confirmed a destructive command on this slug; only made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed(String);

impl Confirmed {
    /// The slug as confirmed (sent as `confirm` where the API asks for it).
    pub fn into_string(self) -> String {
        self.0
    }
}

/// What is left to do after looking at `--confirm` and the terminal.
#[derive(Debug)]
pub enum Plan {
    /// `--confirm` matched.
    Confirmed(Confirmed),
    /// Ask at the terminal (after the cheap checks, e.g. that a token can be had).
    Ask,
}

/// Checks `--confirm` (must equal the slug) or that there is a terminal to ask at.
pub fn plan(
    slug: &TenantSlug,
    action: Destructive,
    confirm: Option<&str>,
    stdin_is_terminal: bool,
) -> Result<Plan, Failure> {
    match confirm {
        Some(typed) => check(slug, typed).map(Plan::Confirmed),
        None if stdin_is_terminal => Ok(Plan::Ask),
        None => Err(Failure::new(format!(
            "{} {slug} needs a confirmation and stdin is not a terminal; nothing was changed",
            action.doing()
        ))
        .hint(format!("pass --confirm {slug}"))),
    }
}

impl Plan {
    /// The confirmation: the one from `--confirm`, else the line `prompt` reads.
    pub fn resolve(
        self,
        slug: &TenantSlug,
        prompt: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<Confirmed, Failure> {
        match self {
            Plan::Confirmed(c) => Ok(c),
            Plan::Ask => {
                let typed = prompt()
                    .map_err(|e| Failure::new(format!("cannot read the confirmation: {e}")))?;
                check(slug, typed.trim())
            }
        }
    }
}

fn check(slug: &TenantSlug, typed: &str) -> Result<Confirmed, Failure> {
    if typed != slug.as_str() {
        return Err(Failure::new(format!(
            "confirmation {typed:?} does not match tenant {slug}; nothing was changed"
        ))
        .hint(format!("type the slug exactly, or pass --confirm {slug}")));
    }
    Ok(Confirmed(typed.to_owned()))
}

/// Asks on stderr and reads one line from stdin.
pub fn prompt_terminal(slug: &TenantSlug, action: Destructive) -> std::io::Result<String> {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    write!(
        stderr,
        "{}\nType the tenant slug ({slug}) to confirm: ",
        action.warning(slug)
    )?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn slug() -> TenantSlug {
        TenantSlug::parse("acme-corp").unwrap()
    }

    fn no_prompt() -> std::io::Result<String> {
        panic!("must not prompt")
    }

    #[test]
    fn confirm_flag_must_match() {
        let p = plan(&slug(), Destructive::Offboard, Some("acme-corp"), false).unwrap();
        let c = p.resolve(&slug(), no_prompt).unwrap();
        assert_eq!(c.into_string(), "acme-corp");
        // A wrong --confirm is refused even at a terminal, without asking.
        let err = plan(&slug(), Destructive::Offboard, Some("acme"), true).unwrap_err();
        assert!(err.message.contains("does not match"), "{err}");
        let err = plan(
            &slug(),
            Destructive::EmergencyRotation,
            Some("acme-corp "),
            true,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("\"acme-corp \" does not match tenant acme-corp"),
            "{err}"
        );
    }

    #[test]
    fn confirm_without_terminal_fails_with_hint() {
        for action in [Destructive::Offboard, Destructive::EmergencyRotation] {
            let err = plan(&slug(), action, None, false).unwrap_err();
            assert_eq!(err.hint.as_deref(), Some("pass --confirm acme-corp"));
            assert!(err.message.contains("not a terminal"), "{err}");
        }
    }

    #[test]
    fn confirm_prompt_is_trimmed_and_checked() {
        let ask = || plan(&slug(), Destructive::Offboard, None, true).unwrap();
        let ok = ask().resolve(&slug(), || Ok("acme-corp\n".into()));
        assert_eq!(ok.unwrap().into_string(), "acme-corp");
        assert!(ask().resolve(&slug(), || Ok(String::new())).is_err());
        assert!(ask().resolve(&slug(), || Ok("other\n".into())).is_err());
        assert!(ask()
            .resolve(&slug(), || Err(std::io::Error::other("eof")))
            .is_err());
    }
}
