//! What callers use: request logs, and the counters behind plan and rate limits.

pub mod count_rows;
pub mod counters;
pub mod limits;
pub mod log_rows;
pub mod logs;

pub use limits::Limits;
pub use logs::{ApiStyle, LogEntry, LogFilter, RequestCounts, RequestLogWriter};
