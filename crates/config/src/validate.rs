//! Validation: unknown keys, and known keys whose behaviour is not there yet.
