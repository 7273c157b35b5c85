"""Adapters: the AWS services, the scratch disk and the model processes behind the core's Protocols."""
