//! One decision from a verdict, the mode and break-glass: what the webhook answers, what
//! `check` prints and what `report` counts as blocked all come from [`settle`].

use serde::Serialize;

use crate::engine::Verdict;
pub use crate::model::GuardMode;

/// What happened to a review; also the `verdict` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    Denied,
    WouldDeny,
    BreakGlass,
    NotReviewed,
    Invalid,
    Unsynced,
    Timeout,
}

impl Decision {
    pub const ALL: [Decision; 8] = [
        Decision::Allowed,
        Decision::Denied,
        Decision::WouldDeny,
        Decision::BreakGlass,
        Decision::NotReviewed,
        Decision::Invalid,
        Decision::Unsynced,
        Decision::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::WouldDeny => "would_deny",
            Decision::BreakGlass => "break_glass",
            Decision::NotReviewed => "not_reviewed",
            Decision::Invalid => "invalid",
            Decision::Unsynced => "unsynced",
            Decision::Timeout => "timeout",
        }
    }
}

/// The webhook's decision on a judged change: allowed when nothing denies; otherwise
/// break-glass when the request carries an honoured one, else denied in enforce mode and
/// allowed with a report in audit mode.
pub fn settle(verdict: &Verdict, mode: GuardMode, break_glass: bool) -> Decision {
    match (verdict.denies(), break_glass, mode) {
        (false, ..) => Decision::Allowed,
        (true, true, _) => Decision::BreakGlass,
        (true, false, GuardMode::Enforce) => Decision::Denied,
        (true, false, GuardMode::Audit) => Decision::WouldDeny,
    }
}
