"""Images: the registry, base images, FL-actor and inference-server builds."""
