/*
 * Runs JSch's client against one server until key exchange is done, so tests can compare
 * what the real library offers and accepts with kexproxy's capability catalogue.
 *
 * Usage: java -cp jsch.jar:. JschClient HOST PORT [KEY=VALUE ...]
 *
 * Each KEY=VALUE is passed to Session.setConfig(KEY, VALUE) as a user would write it, e.g.
 * kex=diffie-hellman-group14-sha1 or cipher.c2s=aes128-ctr,aes256-ctr; keys left out keep
 * JSch's defaults. It exits 0 once the key exchange has completed (authentication was
 * reached: the session has the server's host key), printing "kex complete" and the host
 * key type to stderr; otherwise it exits 1 with JSch's own error text on stderr.
 */

import com.jcraft.jsch.JSch;
import com.jcraft.jsch.JSchException;
import com.jcraft.jsch.Session;

public final class JschClient {
  private JschClient() {}

  public static void main(String[] args) {
    if (args.length < 2) {
      System.err.println("usage: JschClient HOST PORT [KEY=VALUE ...]");
      System.exit(2);
    }
    Session session = null;
    try {
      session = new JSch().getSession("kexproxy-test", args[0], Integer.parseInt(args[1]));
      // No known_hosts and no credentials: reaching authentication is all the test needs.
      session.setConfig("StrictHostKeyChecking", "no");
      session.setConfig("PreferredAuthentications", "none");
      for (int i = 2; i < args.length; i++) {
        int eq = args[i].indexOf('=');
        if (eq <= 0) {
          System.err.println("not KEY=VALUE: " + args[i]);
          System.exit(2);
        }
        session.setConfig(args[i].substring(0, eq), args[i].substring(eq + 1));
      }
      session.setTimeout(15000);
      session.connect(15000);
    } catch (JSchException e) {
      // The host key is set only after the server's signature over the exchange was checked.
      if (session == null || session.getHostKey() == null) {
        System.err.println(e.getMessage());
        System.exit(1);
      }
    } finally {
      if (session != null) {
        session.disconnect();
      }
    }
    System.err.println("kex complete; host key " + session.getHostKey().getType());
  }
}
