-- Support finds sessions by flow and time (`sessions(filter:)`), newest first.
CREATE INDEX sessions_flow_created ON sessions (flow_id, created_at);
