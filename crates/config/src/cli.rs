//! `ros config`.
