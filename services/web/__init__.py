"""Server-rendered pages of the admin process: the review console and requesters' case pages."""
