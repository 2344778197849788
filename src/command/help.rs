//! `/failover help`: the usage of every verb. Works anywhere, even where
//! no other command is taken.

pub const USAGE: &str = "`/failover help`";
pub const SUMMARY: &str = "this help";
