//! Privacy: literal values of a command replaced by a placeholder, its shape kept.
