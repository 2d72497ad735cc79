"""The GraphQL surface: the schema (`schema/`), the delivery engine (`fanout/`), the controller."""
