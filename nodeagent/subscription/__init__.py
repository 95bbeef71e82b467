"""The agent's end of the subscription stream: `client.SubscriptionClient` keeps a
`state.ReceivedState` equal to what the control plane holds for this node."""
