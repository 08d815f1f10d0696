"""``Patient/$locate``: where a patient's imaging is, as Endpoints."""
