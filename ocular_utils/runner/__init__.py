"""Runner: profiles, the grid plan, the scheduler, notebook sessions, the command line and the book."""
