"""The platform every domain stands on: settings, database engine and sessions, advisory locks, notifications, pagination, the clock, errors and the event log."""
