//! Placeholder; see the planner issue.
