namespace CertPortal.Data;

/// <summary>An EF Core compiled query, compiled once per database provider. A compiled query binds to the model of the
/// first context it runs with, and the SQLite and PostgreSQL contexts have different models: one process that uses
/// both (the test suite; a migration tool) otherwise fails with "compiled query was executed with a different model".</summary>
public sealed class CompiledQuery<TQuery>(Func<TQuery> compile) where TQuery : class
{
    private readonly Lazy<TQuery> _sqlite = new(compile);
    private readonly Lazy<TQuery> _postgres = new(compile);

    public TQuery For(CertPortalDbContext db) => db.HasConcurrentWriters() ? _postgres.Value : _sqlite.Value;
}
