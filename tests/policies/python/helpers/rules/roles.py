ROLES = {"pk-office": "primary", "pk-laptop": "secondary"}
