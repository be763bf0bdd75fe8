//! # engine: the OxOS system container engine
