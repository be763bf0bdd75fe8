//! # image-store: images and layers of the system engine
