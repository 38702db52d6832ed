"""runtime: load with bcc, attach, poll, decode and print."""
