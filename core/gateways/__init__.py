"""Access gateways: the connections a lab's Guacamole or Jumpserver holds for running environments."""
