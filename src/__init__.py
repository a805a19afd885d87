"""conveyor: background jobs for Python with PostgreSQL as the only infrastructure."""
