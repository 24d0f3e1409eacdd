"""The entity actors: containers, endpoint shells, forwarders, and the registry of live
containers. Each owns one machine (``lifecycle``) and asks it before it acts."""
