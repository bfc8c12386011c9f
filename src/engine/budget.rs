//! How much work a review may do where it runs: a server decides a review on the thread that
//! read it only while the review stays small, and hands a larger one to the blocking pool.

use std::cell::Cell;

/// Work a review may still do, in units of about one workload, Service route, rule or
/// NetworkPolicy weight visited. Each loop takes its length before it starts, so a review never
/// does much more than it was given; once refused, a budget refuses everything after.
#[derive(Debug)]
pub struct Budget {
    left: Cell<usize>,
    spent: Cell<bool>,
}

impl Budget {
    pub fn new(units: usize) -> Budget {
        Budget {
            left: Cell::new(units),
            spent: Cell::new(false),
        }
    }

    /// Takes `units` if that many are left.
    pub fn afford(&self, units: usize) -> bool {
        match self.left.get().checked_sub(units) {
            Some(left) if !self.spent.get() => {
                self.left.set(left);
                true
            }
            _ => {
                self.spent.set(true);
                false
            }
        }
    }

    /// Whether a charge was refused: the review's result is incomplete and must be dropped.
    pub fn is_spent(&self) -> bool {
        self.spent.get()
    }
}

/// A review's budget if it has one: without, every charge is granted.
pub(super) fn afford(budget: Option<&Budget>, units: usize) -> bool {
    budget.is_none_or(|b| b.afford(units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_grants_up_to_its_units_then_refuses_everything() {
        let b = Budget::new(10);
        assert!(b.afford(4) && b.afford(6));
        assert!(!b.is_spent());
        assert!(!b.afford(1));
        assert!(b.is_spent());
        assert!(!b.afford(0), "a refused budget stays refused");
        assert!(afford(None, usize::MAX));
    }
}
