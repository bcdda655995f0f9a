//! What callers use: request logs, and the counters behind plan and rate limits.

pub mod count_rows;
pub mod counters;
pub mod limits;
pub mod log_rows;
pub mod logs;
pub mod request_counts;

pub use limits::{Limits, PlanUsage, WindowUsage};
pub use logs::{ApiStyle, LogEntry, LogFilter, RequestLogWriter};
pub use request_counts::RequestCounts;
