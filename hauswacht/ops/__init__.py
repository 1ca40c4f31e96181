"""Operations: access-log replay now; backups, retention and status later."""
