//! Allow and deny lists (work in progress).
