//! The pieces of model-cache's benchmark report (`cargo bench -p model-cache-bench`).
