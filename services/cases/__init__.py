"""Cases: the requester's view of a registration (status and withdrawal, by number and PIN)."""
