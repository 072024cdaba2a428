"""Code shared by the three services: schemas, config, the Kafka loop, errors, metrics."""
