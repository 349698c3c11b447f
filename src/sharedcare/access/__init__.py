"""Access: request context, roles, legitimate relationships, objections and audit."""
