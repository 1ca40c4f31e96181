"""The writer: the bounded event queue, the batched aiosqlite writer and the schema it owns."""
