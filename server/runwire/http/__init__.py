"""Plain HTTP routes: SSE events, health, and the offline GraphiQL assets."""
