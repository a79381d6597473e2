"""The parts ``JobQueue`` is made of, one job each: claims and leases, the sweep into
history, room in the ring, the pause flag, progress, the read side. Only the core imports
them; the rest of the package goes through ``JobQueue``.
"""
