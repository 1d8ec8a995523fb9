using CertPortal.Kra;

// certportal-kra: what a key recovery agent runs on their own machine. The server never sees the
// agent's private key; it sends each agent its Shamir share encrypted (CMS) to the agent's certificate.
return KraCli.Run(args, Console.In, Console.Out, Console.Error);
