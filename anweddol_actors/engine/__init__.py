"""The engine below the seed façade: the supervisor, sessions, the request flows, event
dispatch and the reaper. Ordinary snake_case Python; ``core/`` presents it as the seed."""
