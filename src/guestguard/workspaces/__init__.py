"""Workspaces (tenants) and memberships. Signup creates a personal one; the
full model (invitations, roles, API keys, the resource tree) builds on these."""
