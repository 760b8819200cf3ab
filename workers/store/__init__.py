"""The store: every Redis key the project uses, and every read and write of them."""
