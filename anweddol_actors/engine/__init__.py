"""The engine below the seed façade: event dispatch, request flows, the listener and the
supervisor that ties the actors together. Ordinary snake_case Python."""
