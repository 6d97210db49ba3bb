//! ip (in progress)
