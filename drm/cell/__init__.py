"""The training cell's parts: config and task presets, the DMC pixel environment, replay,
snapshots, CSV logs, rendering backend, allocator settings, provenance. Import-free."""
