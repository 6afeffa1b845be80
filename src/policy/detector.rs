//! Detection policy (work in progress).
