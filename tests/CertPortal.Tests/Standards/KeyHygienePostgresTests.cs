using CertPortal.Tests.Postgres;

namespace CertPortal.Tests.Standards;

/// <summary>The key-compromise races on PostgreSQL, where concurrent writers really interleave and only the
/// per-key advisory lock keeps an enrollment from slipping past a block.</summary>
public sealed class KeyHygienePostgresTests(PostgresApp app) : IClassFixture<PostgresApp>
{
    [Fact]
    public Task An_enrollment_racing_a_key_compromise_never_leaves_a_valid_certificate_for_the_key_on_postgresql() =>
        KeyCompromiseRaces.Enrollment_racing_a_key_compromise(app, "pg-race");

    [Fact]
    public Task Two_key_compromise_revocations_of_one_key_at_once_both_succeed_on_postgresql() =>
        KeyCompromiseRaces.Two_revocations_of_one_key_at_once(app, "pg-twice");
}
