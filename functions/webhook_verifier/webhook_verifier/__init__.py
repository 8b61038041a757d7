"""webhook_verifier: signed inbound webhooks and the billing checkout nonce they are bound to."""
