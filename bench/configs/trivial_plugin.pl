# bench trivial plugin: registers four hooks and declines everything.
sub register { my ($self, $qp, @args) = @_; $self->{calls} = 0; }
sub hook_connect { return DECLINED; }
sub hook_mail { return DECLINED; }
sub hook_rcpt { return DECLINED; }
sub hook_data_post { return DECLINED; }
