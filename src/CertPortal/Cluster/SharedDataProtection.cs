using System.Xml.Linq;
using CertPortal.Data;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.XmlEncryption;
using Microsoft.Extensions.Options;

namespace CertPortal.Cluster;

/// <summary>ASP.NET Core Data Protection (console cookies, antiforgery tokens) with its key ring in the
/// database instead of each node's home directory, so a session made on one node is valid on all. The
/// key ring is sealed with <see cref="KeyEncryptionSecret"/> before it is stored: the ring in plain XML
/// would let anyone with a database copy forge an administrator's cookie.</summary>
public static class SharedDataProtection
{
    public const string ApplicationName = "CertPortal";

    public static void AddSharedDataProtection(this IServiceCollection services)
    {
        services.AddDataProtection()
            // Without a fixed name, Data Protection isolates apps by content root path, which differs between nodes.
            .SetApplicationName(ApplicationName)
            .PersistKeysToDbContext<CertPortalDbContext>();
        services.AddSingleton<IConfigureOptions<KeyManagementOptions>>(sp => new ConfigureOptions<KeyManagementOptions>(o =>
            o.XmlEncryptor = new SealedXmlEncryptor(sp.GetRequiredService<KeyEncryptionSecret>())));
    }
}

/// <summary>Replaces a key's XML with its sealed bytes; Data Protection stores the result with the decryptor's type.</summary>
public sealed class SealedXmlEncryptor(KeyEncryptionSecret kek) : IXmlEncryptor
{
    internal const string Purpose = "data-protection-key";

    public EncryptedXmlInfo Encrypt(XElement plaintextElement)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(plaintextElement.ToString(SaveOptions.DisableFormatting));
        var element = new XElement("sealedKey", Convert.ToBase64String(kek.Seal(bytes, Purpose)));
        return new EncryptedXmlInfo(element, typeof(SealedXmlDecryptor));
    }
}

/// <summary>Created by Data Protection from the type name stored with each key (hence the IServiceProvider constructor).</summary>
public sealed class SealedXmlDecryptor(IServiceProvider services) : IXmlDecryptor
{
    public XElement Decrypt(XElement encryptedElement)
    {
        var kek = services.GetRequiredService<KeyEncryptionSecret>();
        var plaintext = kek.Open(Convert.FromBase64String(encryptedElement.Value), SealedXmlEncryptor.Purpose);
        return XElement.Parse(System.Text.Encoding.UTF8.GetString(plaintext));
    }
}
