"""Host apps devenv runs: the frontend, Metro, Expo or a project's own, each a detached
process group under a small supervisor, on a port the planner chose (config/apptables.py
reads their tables; stack/ starts them after what they need answers)."""
