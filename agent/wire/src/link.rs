//! link (in progress)
